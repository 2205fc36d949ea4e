"""The reports database: the `reports` table and CSV large objects (`reports_db`), and the
retry policy for work that cannot reach the server (`retry`)."""
