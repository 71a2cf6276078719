"""What the API's results look like in a notebook: the HTML behind their ``_repr_html_``.

Jupyter shows a cell's value through the value's ``_repr_html_`` when it has one, and
through its ``repr`` otherwise (a terminal, a log). The results users look at answer
both: a search (`workbench.analysis.search_result.SearchResult`), `Stats`, a person
(`PersonInfo`), an evaluation (`LfwReport`, `Comparison`, `CelebaReport`) and a
`Calibration` keep their plain reprs and delegate ``_repr_html_`` to a module here:

* `html`: the pieces (escaping, tables, capped inline thumbnails, an SVG curve);
* `stats`, `search`, `people`, `evaluation`: one display each.

This room sits on the ground floor (it imports nothing of the package but `errors`
and `redaction`), so any stage's result may delegate to it; pictures are handed in
as JPEG bytes or fetched through a callable the result provides, never read here.
"""
