-- One process, one writer: always granted.
SELECT $1 IS NOT NULL
