"""The pilot comparison report: rubric and pilot evidence reconciled, as a page and a PDF."""
