"""Serving logic of the collaborative engine: :class:`hybrec.recommend.service.Recommender`."""
