ALTER TYPE user_presence ADD VALUE IF NOT EXISTS 'busy' BEFORE 'offline';
