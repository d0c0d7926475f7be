"""Recursive monitoring: the Datalog query language, its engine and the metric collectors."""
