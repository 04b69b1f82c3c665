"""Judging selection rules (torch-free): verdict, intervals, signals, statistics, across seeds."""
