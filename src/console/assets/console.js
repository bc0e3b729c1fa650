// kube-relay console: the one script of our own. Copy buttons (data-copy="#id" names the
// element whose text or value is copied); everything else works without script.
document.addEventListener('click', (event) => {
  const button = event.target instanceof Element ? event.target.closest('button[data-copy]') : null;
  if (!button) return;
  const source = document.querySelector(button.getAttribute('data-copy'));
  if (!source) return;
  const text = 'value' in source ? source.value : source.textContent;
  const done = (label) => {
    const before = button.textContent;
    button.textContent = label;
    setTimeout(() => (button.textContent = before), 1500);
  };
  if (navigator.clipboard && window.isSecureContext) {
    navigator.clipboard.writeText(text).then(() => done('Copied'), () => done('Select and copy'));
  } else {
    done('Select and copy');
  }
  if ('select' in source) source.select();
});
