"""A reusable engine that fills a column of a large table in the background."""
