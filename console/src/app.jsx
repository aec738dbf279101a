export function App() {
  return <main><h1>arun</h1></main>;
}
