from recorder.book.l2book import L2Book
from recorder.book.textbook import TextL2Book

__all__ = ["L2Book", "TextL2Book"]
