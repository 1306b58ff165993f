-- Schema for the reading-group platform: members, groups, books, sessions and reviews.
-- Every table has a surrogate key, created/updated columns maintained by triggers, and
-- foreign keys with explicit ON DELETE behaviour. Run inside one transaction.

BEGIN;

CREATE EXTENSION IF NOT EXISTS citext;
CREATE EXTENSION IF NOT EXISTS pg_trgm;

CREATE OR REPLACE FUNCTION touch_updated_at() RETURNS trigger AS $$
BEGIN
    NEW.updated_at := now();
    RETURN NEW;
END;
$$ LANGUAGE plpgsql;

CREATE TABLE members (
    id            bigserial PRIMARY KEY,
    email         citext      NOT NULL UNIQUE,
    display_name  text        NOT NULL CHECK (length(display_name) BETWEEN 1 AND 80),
    bio           text        NOT NULL DEFAULT '',
    locale        text        NOT NULL DEFAULT 'en',
    is_admin      boolean     NOT NULL DEFAULT false,
    deactivated   boolean     NOT NULL DEFAULT false,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now()
);
CREATE TRIGGER members_touch BEFORE UPDATE ON members
    FOR EACH ROW EXECUTE FUNCTION touch_updated_at();

CREATE TABLE groups (
    id            bigserial PRIMARY KEY,
    slug          text        NOT NULL UNIQUE CHECK (slug ~ '^[a-z0-9][a-z0-9-]{2,40}$'),
    name          text        NOT NULL,
    description   text        NOT NULL DEFAULT '',
    visibility    text        NOT NULL DEFAULT 'public'
                  CHECK (visibility IN ('public', 'unlisted', 'private')),
    max_members   integer     NOT NULL DEFAULT 30 CHECK (max_members BETWEEN 2 AND 500),
    owner_id      bigint      NOT NULL REFERENCES members (id) ON DELETE RESTRICT,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now()
);
CREATE TRIGGER groups_touch BEFORE UPDATE ON groups
    FOR EACH ROW EXECUTE FUNCTION touch_updated_at();
CREATE INDEX groups_name_trgm ON groups USING gin (name gin_trgm_ops);

CREATE TABLE memberships (
    group_id      bigint      NOT NULL REFERENCES groups (id) ON DELETE CASCADE,
    member_id     bigint      NOT NULL REFERENCES members (id) ON DELETE CASCADE,
    role          text        NOT NULL DEFAULT 'reader'
                  CHECK (role IN ('reader', 'host', 'moderator')),
    joined_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (group_id, member_id)
);
CREATE INDEX memberships_member ON memberships (member_id);

CREATE TABLE books (
    id            bigserial PRIMARY KEY,
    isbn13        char(13)    UNIQUE CHECK (isbn13 ~ '^[0-9]{13}$'),
    title         text        NOT NULL,
    subtitle      text,
    authors       text[]      NOT NULL CHECK (cardinality(authors) > 0),
    language      text        NOT NULL DEFAULT 'en',
    pages         integer     CHECK (pages > 0),
    published_year smallint   CHECK (published_year BETWEEN 1400 AND 2100),
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now()
);
CREATE TRIGGER books_touch BEFORE UPDATE ON books
    FOR EACH ROW EXECUTE FUNCTION touch_updated_at();
CREATE INDEX books_title_trgm ON books USING gin (title gin_trgm_ops);

CREATE TABLE sessions (
    id            bigserial PRIMARY KEY,
    group_id      bigint      NOT NULL REFERENCES groups (id) ON DELETE CASCADE,
    book_id       bigint      NOT NULL REFERENCES books (id) ON DELETE RESTRICT,
    host_id       bigint      REFERENCES members (id) ON DELETE SET NULL,
    starts_at     timestamptz NOT NULL,
    duration      interval    NOT NULL DEFAULT interval '90 minutes'
                  CHECK (duration BETWEEN interval '15 minutes' AND interval '6 hours'),
    location      text,
    online_url    text,
    chapters      text        NOT NULL DEFAULT '',
    cancelled     boolean     NOT NULL DEFAULT false,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    CHECK (location IS NOT NULL OR online_url IS NOT NULL)
);
CREATE TRIGGER sessions_touch BEFORE UPDATE ON sessions
    FOR EACH ROW EXECUTE FUNCTION touch_updated_at();
CREATE INDEX sessions_group_start ON sessions (group_id, starts_at);

CREATE TABLE attendance (
    session_id    bigint      NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    member_id     bigint      NOT NULL REFERENCES members (id) ON DELETE CASCADE,
    answer        text        NOT NULL CHECK (answer IN ('yes', 'no', 'maybe')),
    answered_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (session_id, member_id)
);

CREATE TABLE reviews (
    id            bigserial PRIMARY KEY,
    book_id       bigint      NOT NULL REFERENCES books (id) ON DELETE CASCADE,
    member_id     bigint      NOT NULL REFERENCES members (id) ON DELETE CASCADE,
    rating        smallint    NOT NULL CHECK (rating BETWEEN 1 AND 5),
    body          text        NOT NULL DEFAULT '' CHECK (length(body) <= 10000),
    spoilers      boolean     NOT NULL DEFAULT false,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    UNIQUE (book_id, member_id)
);
CREATE TRIGGER reviews_touch BEFORE UPDATE ON reviews
    FOR EACH ROW EXECUTE FUNCTION touch_updated_at();

-- A group may not hold more members than its limit.
CREATE OR REPLACE FUNCTION check_group_capacity() RETURNS trigger AS $$
DECLARE
    current_count integer;
    capacity      integer;
BEGIN
    SELECT count(*) INTO current_count FROM memberships WHERE group_id = NEW.group_id;
    SELECT max_members INTO capacity FROM groups WHERE id = NEW.group_id;
    IF current_count >= capacity THEN
        RAISE EXCEPTION 'group % is full (% members)', NEW.group_id, capacity
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NEW;
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER memberships_capacity BEFORE INSERT ON memberships
    FOR EACH ROW EXECUTE FUNCTION check_group_capacity();

-- Average rating and review count per book, refreshed by the nightly job.
CREATE MATERIALIZED VIEW book_ratings AS
SELECT b.id AS book_id,
       count(r.id) AS review_count,
       round(avg(r.rating)::numeric, 2) AS average_rating
FROM books b
LEFT JOIN reviews r ON r.book_id = b.id
GROUP BY b.id;
CREATE UNIQUE INDEX book_ratings_pk ON book_ratings (book_id);

-- Upcoming sessions for a member, with the number of people who said yes.
CREATE OR REPLACE VIEW upcoming_sessions AS
SELECT s.id,
       s.group_id,
       g.name AS group_name,
       b.title AS book_title,
       s.starts_at,
       s.duration,
       coalesce(s.location, s.online_url) AS place,
       (SELECT count(*) FROM attendance a WHERE a.session_id = s.id AND a.answer = 'yes') AS going
FROM sessions s
JOIN groups g ON g.id = s.group_id
JOIN books b ON b.id = s.book_id
WHERE NOT s.cancelled AND s.starts_at > now();

-- Typical queries, kept here so their plans can be checked with EXPLAIN in review.

-- 1. The next three sessions of the groups a member belongs to.
-- SELECT u.* FROM upcoming_sessions u
-- JOIN memberships m ON m.group_id = u.group_id
-- WHERE m.member_id = $1
-- ORDER BY u.starts_at
-- LIMIT 3;

-- 2. Books read by a group, most recent first, with the group's own average rating.
-- SELECT b.title, max(s.starts_at) AS last_session, round(avg(r.rating), 1) AS group_rating
-- FROM sessions s
-- JOIN books b ON b.id = s.book_id
-- LEFT JOIN reviews r ON r.book_id = b.id
--     AND r.member_id IN (SELECT member_id FROM memberships WHERE group_id = s.group_id)
-- WHERE s.group_id = $1 AND NOT s.cancelled
-- GROUP BY b.id
-- ORDER BY last_session DESC;

-- 3. Members who have not answered for a session yet.
-- SELECT mem.display_name, mem.email
-- FROM memberships m
-- JOIN members mem ON mem.id = m.member_id
-- LEFT JOIN attendance a ON a.member_id = m.member_id AND a.session_id = $2
-- WHERE m.group_id = $1 AND a.member_id IS NULL AND NOT mem.deactivated;

COMMIT;
