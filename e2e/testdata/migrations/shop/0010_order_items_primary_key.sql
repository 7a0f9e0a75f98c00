ALTER TABLE order_items ADD PRIMARY KEY (order_id, product_id);
