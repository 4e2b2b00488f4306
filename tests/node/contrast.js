// Contrast of every visible text run against the background actually painted behind it
// (the ancestors' background colours composed over white), WCAG 2 relative luminance.
// Evaluated in the page by tests/email_support.py; returns the runs and the page colour.
() => {
  const parse = (c) => { const m = c.match(/rgba?\(([^)]+)\)/); if (!m) return [0,0,0,0];
    const p = m[1].split(',').map(Number); return [p[0], p[1], p[2], p.length > 3 ? p[3] : 1]; };
  const over = (top, bottom) => { const a = top[3] + bottom[3] * (1 - top[3]);
    if (a === 0) return [0,0,0,0];
    return [0,1,2].map(i => (top[i]*top[3] + bottom[i]*bottom[3]*(1-top[3])) / a).concat([a]); };
  const lum = (c) => { const f = (v) => { v /= 255; return v <= 0.03928 ? v/12.92 : Math.pow((v+0.055)/1.055, 2.4); };
    return 0.2126*f(c[0]) + 0.7152*f(c[1]) + 0.0722*f(c[2]); };
  const background = (el) => { const layers = [];
    for (let e = el; e; e = e.parentElement) layers.push(parse(getComputedStyle(e).backgroundColor));
    let bg = [255,255,255,1]; for (let i = layers.length - 1; i >= 0; i--) bg = over(layers[i], bg); return bg; };
  const out = [];
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    if (!node.textContent.trim()) continue;
    const el = node.parentElement; const style = getComputedStyle(el);
    const box = el.getBoundingClientRect();
    if (style.display === 'none' || style.visibility === 'hidden' || box.width === 0 || box.height === 0) continue;
    let hidden = false; for (let e = el; e; e = e.parentElement) {
      const s = getComputedStyle(e); if (s.display === 'none' || Number(s.opacity) === 0 || s.maxHeight === '0px') hidden = true; }
    if (hidden) continue;
    const bg = background(el); const fg = over(parse(style.color), bg);
    const [hi, lo] = [lum(fg), lum(bg)].sort((a, b) => b - a);
    out.push({ text: node.textContent.trim().slice(0, 60), ratio: (hi + 0.05) / (lo + 0.05),
               color: style.color, size: parseFloat(style.fontSize) });
  }
  return { runs: out, body: getComputedStyle(document.body).backgroundColor,
           page: background(document.querySelector('.page') || document.body) };
}
