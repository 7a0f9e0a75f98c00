ALTER TYPE message_kind ADD VALUE IF NOT EXISTS 'poll';
