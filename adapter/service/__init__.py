"""The ingestion service: accepts data pushed by integration engines, keeps it safe, screens it."""
