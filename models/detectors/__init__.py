"""The built-in detector kinds: one module each, named as the registry's ``kind``.

Each module holds its serving code and declares ``KIND``
(:class:`deepfake_stream.models.kinds.DetectorKind`); its trainer lives apart, in
:mod:`deepfake_stream.models.training`.
"""
