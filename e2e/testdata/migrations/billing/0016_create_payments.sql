-- +goose Up
CREATE TABLE payments (
    id           bigserial,
    customer_id  bigint NOT NULL REFERENCES customers (id),
    invoice_id   bigint,
    method       text NOT NULL,
    amount_cents bigint NOT NULL CHECK (amount_cents > 0),
    currency     char(3) NOT NULL,
    received_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (id, method)
) PARTITION BY LIST (method);

CREATE TABLE payments_card PARTITION OF payments FOR VALUES IN ('card');
CREATE TABLE payments_bank PARTITION OF payments FOR VALUES IN ('ach', 'sepa', 'wire');
CREATE TABLE payments_wallet PARTITION OF payments FOR VALUES IN ('paypal', 'apple_pay');
