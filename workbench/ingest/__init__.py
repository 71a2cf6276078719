"""Getting photos in: the ingest run (`pipeline`: read, decode, detect, embed, store), and
its distributed form, jobs on a broker (`queue`) consumed by workers (`worker`)."""
