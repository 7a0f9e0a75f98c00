ALTER TABLE products
    ADD CONSTRAINT products_title_not_blank CHECK (btrim(title) <> '') NOT VALID;
