-- +goose Up
-- +goose StatementBegin
CREATE OR REPLACE FUNCTION ledger_entries_apply_balance() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE customers
    SET balance_cents = balance_cents + NEW.amount_cents
    WHERE id = NEW.customer_id;
    RETURN NEW;
END;
$$;
-- +goose StatementEnd

CREATE TRIGGER ledger_entries_apply_balance
    AFTER INSERT ON ledger_entries
    FOR EACH ROW EXECUTE FUNCTION ledger_entries_apply_balance();

UPDATE customers c
SET balance_cents = s.total
FROM (
    SELECT customer_id, sum(amount_cents) AS total
    FROM ledger_entries
    GROUP BY customer_id
) s
WHERE s.customer_id = c.id;
