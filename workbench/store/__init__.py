"""Where faces are kept: the SQL catalog (`models`, `schema`, `catalog`), the Milvus vector
index (`vectors`, `milvus_server`), and `faces.FaceStore`, the two together with the
crash-safe write order."""
