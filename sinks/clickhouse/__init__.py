"""ClickHouse sink: every pipeline topic -> tables + analyst views."""
