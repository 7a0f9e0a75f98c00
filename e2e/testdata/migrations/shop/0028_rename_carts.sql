ALTER TABLE carts RENAME TO shopping_carts;
ALTER SEQUENCE carts_id_seq RENAME TO shopping_carts_id_seq;
ALTER INDEX carts_pkey RENAME TO shopping_carts_pkey;
ALTER INDEX carts_user_id_idx RENAME TO shopping_carts_user_id_idx;
ALTER TABLE cart_items RENAME COLUMN cart_id TO shopping_cart_id;
