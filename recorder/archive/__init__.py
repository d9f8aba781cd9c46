"""The lossless archive: every frame a venue process received and sent, its REST responses, and
the live path's decisions (Feed calls, sampler ticks), so ``replay`` recreates the session exactly.

``tap.py`` is what the live path calls, ``writer.py`` writes the files, ``format.py`` is the format.
"""
