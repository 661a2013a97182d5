"""Product retrieval for the shopping assistant: embeddings, the product index, BM25, reranking, personalisation.

* :mod:`~hybrec.retrieval.embedder` — sentence-transformers bi-encoder (all-MiniLM-L6-v2 from PyPI, offline).
* :mod:`~hybrec.retrieval.product_text` — the text a product is matched by, and its content hash.
* :mod:`~hybrec.retrieval.catalog_index` — :class:`CatalogIndex`, the incremental ``products`` collection.
* :mod:`~hybrec.retrieval.lexical` — BM25 and its fusion with the dense score.
* :mod:`~hybrec.retrieval.reranker` — cross-encoder reranking, its fallback and :func:`reranker_status`.
* :mod:`~hybrec.retrieval.personalise` — blending relevance with ALS scores.
* :mod:`~hybrec.retrieval.search` — :class:`ProductSearch`, the pipeline the chat engine calls.
"""
