-- +goose Up
CREATE TABLE tax_rates (
    id         serial PRIMARY KEY,
    country    char(2) NOT NULL,
    region     text NOT NULL DEFAULT '',
    rate       numeric(6, 4) NOT NULL CHECK (rate >= 0 AND rate < 1),
    valid_from date NOT NULL,
    valid_to   date,
    CONSTRAINT tax_rates_country_region_valid_from_key UNIQUE (country, region, valid_from)
);

INSERT INTO tax_rates (country, region, rate, valid_from) VALUES
    ('DE', '', 0.1900, '2020-01-01'),
    ('FR', '', 0.2000, '2020-01-01'),
    ('GB', '', 0.2000, '2020-01-01'),
    ('NL', '', 0.2100, '2020-01-01');
