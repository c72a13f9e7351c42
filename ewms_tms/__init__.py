"""ewms_tms — filled in by a later issue (see ../shared/DESIGN.md)."""
