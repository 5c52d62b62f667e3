"""The local platform: a real Kafka broker and stripe-mock on loopback, plus paths
for chdb (ClickHouse) and the embedded vector index under one data directory."""
