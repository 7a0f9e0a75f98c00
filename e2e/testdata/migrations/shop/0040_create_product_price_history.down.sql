DROP TABLE IF EXISTS product_price_history;
DROP DOMAIN IF EXISTS cents;
