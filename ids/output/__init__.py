"""Output: ECS documents to NDJSON files, the terminal summary, and (as it lands) Elasticsearch."""
