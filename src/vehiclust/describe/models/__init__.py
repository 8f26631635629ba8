"""Image backbone architectures, their weights files, and the uint8-in pipeline wrapper.

Backbones are looked up by name in :data:`vehiclust.describe.backbones.BACKBONES`.
"""
