"""The bundled demo knowledge base (Markdown + faq.yaml); a package so it ships as data."""
