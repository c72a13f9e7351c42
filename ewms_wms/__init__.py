"""ewms_wms — filled in by a later issue (see ../shared/DESIGN.md)."""
