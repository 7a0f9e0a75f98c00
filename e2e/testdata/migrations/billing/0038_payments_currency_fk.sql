-- +goose Up
ALTER TABLE payments
    ADD CONSTRAINT payments_currency_fkey FOREIGN KEY (currency) REFERENCES currencies (code);
ALTER TABLE credit_notes
    ADD CONSTRAINT credit_notes_customer_invoice_key UNIQUE (customer_id, invoice_id);
