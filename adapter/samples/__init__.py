"""Synthetic sample data for NCT06849401 (fictional patients, no real people)."""
