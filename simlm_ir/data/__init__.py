"""Data in the field's formats: passage corpora, ir_datasets collections, the embedded collection, TREC files."""
