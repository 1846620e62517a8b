/** The page a user's browser opens for a finAPI sandbox web form (the scenario decides how the visit ends). */
export function webFormPage(text: string): string {
  return `<!doctype html><title>finAPI sandbox web form</title><p>${text}</p>`;
}
