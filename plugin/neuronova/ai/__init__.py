"""AI: rules, durable inference jobs and their DICOM results (SEG, TID 1500 SR)."""
