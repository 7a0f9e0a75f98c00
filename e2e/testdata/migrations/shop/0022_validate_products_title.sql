ALTER TABLE products VALIDATE CONSTRAINT products_title_not_blank;
