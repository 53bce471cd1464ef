"""The ground floor: measurement, tensor-type helpers and file io that every other floor uses.

Modules here import only the standard library, torch and psutil (and, inside functions, the
quantization libraries whose tensor types they recognize); nothing from another compbench floor.
"""
