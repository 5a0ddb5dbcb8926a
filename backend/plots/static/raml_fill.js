/* RaML Explorer: a fill mark's element at boundary k (backend/plots/fill.py; html_at there is the
 * same join). Prepended to Explore's stepper (app/stepper.py) and to every run page's script
 * (static/raml_run.js, through backend.plots.run_page.run_js). */
function ramlFillAt(f, k) {  // parts[0] + value(slot 1, k) + parts[1] + ... + parts[j]
  let out = f.parts[0];
  for (let i = 0; i < f.slots.length; i++) {
    const slot = f.slots[i];
    let v = '';
    if (Array.isArray(slot)) v = slot[k];
    else for (const j of slot.at[k] || []) v += slot.pool[j];
    out += (v === undefined ? '' : v) + f.parts[i + 1];
  }
  return out;
}
