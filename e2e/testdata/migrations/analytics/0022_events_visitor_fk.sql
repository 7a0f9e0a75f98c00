-- runner: transaction
-- Deploy analytics:events_visitor_fk to pg

alter table events
    add constraint events_visitor_id_fkey
    foreign key (visitor_id) references visitors (id) on delete set null;
