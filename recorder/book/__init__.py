from recorder.book.l2book import L2Book

__all__ = ["L2Book"]
