CREATE TABLE IF NOT EXISTS coupons (
    code            varchar(40) PRIMARY KEY,
    percent_off     integer NOT NULL CHECK (percent_off BETWEEN 1 AND 100),
    valid_from      timestamptz NOT NULL,
    valid_until     timestamptz NOT NULL,
    max_redemptions integer,
    created_at      timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT coupons_valid_range CHECK (valid_until > valid_from)
);

ALTER TABLE orders ADD COLUMN coupon_code varchar(40) REFERENCES coupons (code);
