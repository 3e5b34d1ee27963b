"""The benchmark's pure half: the cell-result schema (`results`), the statistics over cells
(`aggregate`), and what people read (`report`: JSON, the issue comment's markdown, an HTML page; `chart`:
the quality-against-cost PNG). Running the plan × implement matrix and judging its cells happens
elsewhere; nothing here does I/O except `chart` writing the file it is asked to."""
