"""Seeing inside a lab: what it holds (status), what its modules find (diagnose), one connection or a matrix of
them (probe), what the policy model says (explain), where a packet went (trace), what crossed a link
(capture), what testbed did (events), one object and what touches it (describe), and the picture (graph)."""
