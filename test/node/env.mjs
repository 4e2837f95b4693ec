// need returns the environment variable key, or exits 2 saying it is unset:
// the Go test that runs these scripts sets every one.
export const need = (key) => {
  const v = process.env[key];
  if (!v) {
    console.error(`${key} is not set`);
    process.exit(2);
  }
  return v;
};
