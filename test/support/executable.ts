import fs from 'node:fs';

/** True when `file` is a regular file this process may execute (the tools tests look for). */
export function executable(file: string): boolean {
  try {
    fs.accessSync(file, fs.constants.X_OK);
    return fs.statSync(file).isFile();
  } catch {
    return false;
  }
}
