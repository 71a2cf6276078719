"""What analysts do with stored faces: search by sample (`search`), group faces into people
(`cluster`, `people`, `facemap`), browse (`gallery`), export and report (`export`,
`reports`). Each takes the parts it uses (the store, the catalog, a pack, a
calibration), never the `Workbench` facade."""
