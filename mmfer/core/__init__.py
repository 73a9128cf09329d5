"""The bottom layer: errors, model-artifact I/O and transformers checkpoint lookup shared by every branch.

Nothing here imports another mmfer package except the top-level ``mmfer.paths``, ``mmfer.config``
and ``mmfer.emotions`` modules.
"""
