"""Playing by hand: the real game or the world model's dream, in a pygame window.

Only `storm_wm.play.app` imports pygame; the rest (worlds, keys) is plain Python and tested
without a window.
"""
