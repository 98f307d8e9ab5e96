"""The stand-in for AWS: one service model of GameLift Streams capacity, and two fronts on it
(the HTTP emulator, and the in-process adapter used by backtests)."""
