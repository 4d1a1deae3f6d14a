"""Label pyramids: segmentations of images far larger than memory, edited at any level, written in the background.

  segments       what each label value means: NGFF image-label metadata and Slicer's SegmentN_* conventions
  label_store    the label pyramid beside the image (or in a separate local store), chunk reads and atomic writes
  operations     edits in physical coordinates (brush, polygon, threshold, fill, mask) and Slicer's masking
  apply          an operation applied to a box of labels at any level; coarser levels rebuilt by mode
  edit_journal   the fsynced, append-only journal of operations
  before_images  compressed before-images of touched chunks, on disk, for undo
  editor         LabelEditor: acknowledge, preview, background writer, pending-edit overlay, undo and redo
  statistics     per-segment statistics at full resolution, chunk by chunk
  seg_nrrd       import and export of labelmaps and Slicer's .seg.nrrd
"""
