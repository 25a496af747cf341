// MathJax configuration for pymdownx.arithmatex (generic mode). MathJax itself is served from this site
// (javascripts/mathjax/, added by docs/hooks/mathjax.py): the maths renders offline.
window.MathJax = {
  tex: { inlineMath: [["\\(", "\\)"]], displayMath: [["\\[", "\\]"]], processEscapes: true, processEnvironments: true },
  options: { ignoreHtmlClass: ".*|", processHtmlClass: "arithmatex" }
};
document$.subscribe(() => { MathJax.typesetPromise && MathJax.typesetPromise(); });
