"""HTJ2K: lossless HTJ2K renditions of stored instances and their content negotiation.

Pure modules (no ``orthanc`` import, no I/O besides the values passed in):

- :mod:`.syntaxes`       transfer syntax UIDs and the PS3.18 media types that carry them
- :mod:`.errors`         ``NotEncodable`` and ``VerificationError``
- :mod:`.pixels`         reading the original's frames (any syntax pydicom can decode)
- :mod:`.jpeg_decoder`   a pydicom decoder plugin on imagecodecs for JPEG Lossless / 12-bit
- :mod:`.codestream`     parsing a JPEG 2000 main header (what the encoder promised is checked)
- :mod:`.encoder`        one frame -> one verified HTJ2K codestream
- :mod:`.lossy`          whether the original shows evidence of lossy compression
- :mod:`.encapsulation`  the Part 10 rendition file and the frame spans inside it
- :mod:`.codec`          the public entry points: ``encode_rendition``, ``frame_spans``,
                         ``uncompressed_frame``
- :mod:`.negotiation`    PS3.18 ``Accept`` negotiation for frames and instances

Stateful parts (put together by :mod:`.service`): :mod:`.pipeline` (new instances to stored
renditions, trailing a busy ingest), :mod:`.encoder_pool` (the supervised encoder processes,
:mod:`.workers`), :mod:`.rendition_store` (results and files), :mod:`.backfill`.

Serving (:mod:`.serving`) runs inside Orthanc's process and decodes nothing itself: it slices
renditions and native originals, and :mod:`.orthanc_decoding` asks Orthanc's own decoders for
the rest; the third-party decoders above run in the encoder processes only (issue 9).

Nothing is imported here so that importing the package stays cheap (numpy, pydicom and
imagecodecs are loaded only by the modules that need them).
"""
